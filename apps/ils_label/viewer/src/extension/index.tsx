/**
 * OHIF extension for instruction-guided lesion segmentation of chest X-rays with the monai-ils MONAI Label
 * app: a panel (instruction / report, Run, answer, mask as a stack labelmap) and a single-stack hanging
 * protocol. Built with esbuild into one ES module that the prebuilt OHIF viewer imports by URL.
 *
 * The MONAI Label server is `window.config.monaiLabel.server` (app-config.js; '' = the viewer's origin).
 */
import React from 'react';
import { EXTENSION_ID, HANGING_PROTOCOL_ID, PANEL_NAME } from '../ids';
import { cxrSingleProtocol } from './hangingProtocol';
import { hostComponent } from './host';
import { IlsPanel } from './Panel';

let server = '';

const extension = {
  id: EXTENSION_ID,

  preRegistration({ appConfig }: { appConfig: any }) {
    server = appConfig?.monaiLabel?.server ?? '';
  },

  getHangingProtocolModule() {
    return [{ name: HANGING_PROTOCOL_ID, protocol: cxrSingleProtocol }];
  },

  getPanelModule({ servicesManager, extensionManager }: { servicesManager: any; extensionManager: any }) {
    const component = hostComponent(
      () => <IlsPanel servicesManager={servicesManager} extensionManager={extensionManager} server={server} />,
      'ils-panel-host'
    );
    return [
      {
        name: PANEL_NAME,
        iconName: 'tab-segmentation',
        iconLabel: 'ILS',
        label: 'Chest X-ray ILS',
        component,
      },
    ];
  },
};

export default extension;
