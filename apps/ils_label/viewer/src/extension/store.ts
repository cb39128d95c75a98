/** Panel state kept outside React, so closing and reopening the panel keeps the last result. */
import { useSyncExternalStore } from 'react';

export interface PanelState {
  model: string;
  instruction: string;
  report: string;
  status: string;
  busy: boolean;
  answer: string | null;
  warnings: string[];
  findings: string[];
  error: string | null;
  /** Completed runs (success or failure): lets a page script see that a run has ended. */
  runs: number;
}

const initial: PanelState = {
  model: '',
  instruction: '',
  report: '',
  status: '',
  busy: false,
  answer: null,
  warnings: [],
  findings: [],
  error: null,
  runs: 0,
};

let state: PanelState = { ...initial };
const listeners = new Set<() => void>();

export function getState(): PanelState {
  return state;
}

export function setState(update: Partial<PanelState>): void {
  state = { ...state, ...update };
  listeners.forEach(listener => listener());
}

export function resetState(): void {
  setState({ ...initial });
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function usePanelState(): PanelState {
  return useSyncExternalStore(subscribe, getState);
}
