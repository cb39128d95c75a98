/**
 * Render our own React tree inside a panel slot of the prebuilt OHIF viewer.
 *
 * The prebuilt viewer does not expose its React, so the panel bundles its own. OHIF renders a panel
 * component as a function of its React; that function returns one host `<div>` element, written as a
 * plain React 18 element object (the form `React.createElement` returns; OHIF 3.12 runs React 18), whose
 * callback ref mounts or unmounts our root. State that must survive the panel being closed lives in a
 * store outside React (see store.ts).
 */
import type { ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';

const REACT_ELEMENT = Symbol.for('react.element');

export function hostComponent(render: () => ReactNode, className: string): () => unknown {
  let root: Root | null = null;
  let host: HTMLElement | null = null;
  const ref = (element: HTMLElement | null) => {
    if (element && element !== host) {
      host = element;
      const current = createRoot(element);
      root = current;
      current.render(render());
    } else if (!element && root) {
      const stale = root;
      root = null;
      host = null;
      // unmount after the host React finished its commit
      setTimeout(() => stale.unmount(), 0);
    }
  };
  return function IlsPanelHost() {
    return {
      $$typeof: REACT_ELEMENT,
      type: 'div',
      key: null,
      ref,
      props: { className, style: { height: '100%', overflowY: 'auto' } },
      _owner: null,
    };
  };
}
