/**
 * The chest X-ray ILS panel: pick a task from the server's `/info`, type an instruction (ROSALIA) or paste a
 * report (grounding), Run; the mask is drawn as a labelmap segment named by its lesion over the displayed
 * radiograph, the answer text and warnings appear below, and a refused request shows the server's reason.
 */
import React, { useEffect, useState } from 'react';
import { MonaiLabelClient, ServerError, type ModelInfo, type ServerInfo } from './client';
import { decodeLabelPng, drawLabelmap, segmentsOf, type Segment } from './labelmap';
import { getState, setState, usePanelState } from './store';

export interface PanelProps {
  servicesManager: any;
  extensionManager: any;
  server: string;
}

let cachedInfo: ServerInfo | null = null;
const drawnSegmentations: string[] = [];

function labelsOf(model: ModelInfo | undefined): Record<string, number> {
  const labels = model?.labels;
  if (Array.isArray(labels)) {
    return Object.fromEntries(labels.map((name, i) => [name, i + 1]));
  }
  return labels || {};
}

/** The lesion an instruction names ("Segment the effusion in the left lung base." -> "effusion"). */
export function lesionOf(instruction: string, lesionTypes: string[]): string | null {
  const text = instruction.toLowerCase();
  let best: { name: string; at: number } | null = null;
  for (const name of lesionTypes) {
    const at = text.search(new RegExp(`\\b${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`));
    if (at >= 0 && (!best || at < best.at)) {
      best = { name, at };
    }
  }
  return best ? best.name : null;
}

function lesionVocabulary(info: ServerInfo): string[] {
  if (info.lesion_types?.length) {
    return info.lesion_types;
  }
  return Object.keys(labelsOf(info.models.grounding));
}

function activeDisplaySet(servicesManager: any): { viewportId: string; displaySet: any } | null {
  const { viewportGridService, displaySetService } = servicesManager.services;
  const viewportId = viewportGridService.getActiveViewportId();
  const [uid] = viewportId ? viewportGridService.getDisplaySetsUIDsForViewport(viewportId) || [] : [];
  const displaySet = uid ? displaySetService.getDisplaySetByUID(uid) : null;
  return displaySet ? { viewportId, displaySet } : null;
}

function notify(servicesManager: any, title: string, message: string, type: 'error' | 'warning' | 'success' | 'info') {
  servicesManager.services.uiNotificationService.show({ title, message, type, duration: type === 'error' ? 15000 : 5000 });
}

function findingLines(result: Record<string, any>): string[] {
  const findings: any[] = Array.isArray(result.findings) ? result.findings : [];
  return findings.map(f => {
    const where = (f.grounded_location?.length ? f.grounded_location : f.reported_location || []).join(', ');
    const mask = f.label ? `${f.pixels} px` : 'no mask';
    return `${f.lesion || "any lesion"} (${f.presence}${f.certainty ? `, ${f.certainty}` : ''})${where ? ` in ${where}` : ''}: ${mask}`;
  });
}

function warningLines(result: Record<string, any>): string[] {
  const warnings: string[] = [];
  for (const key of ['warning', 'warnings']) {
    const value = result[key];
    if (typeof value === 'string' && value) {
      warnings.push(value);
    } else if (Array.isArray(value)) {
      warnings.push(...value.filter(v => typeof v === 'string'));
    }
  }
  if (result.qc_passed === false && Array.isArray(result.qc_reasons) && result.qc_reasons.length) {
    warnings.push(`Quality control: ${result.qc_reasons.join('; ')}`);
  }
  return warnings;
}

async function run(props: PanelProps, info: ServerInfo): Promise<void> {
  const { servicesManager, extensionManager, server } = props;
  const state = getState();
  const model = state.model;
  const task = info.models[model];
  const target = activeDisplaySet(servicesManager);
  if (!target) {
    notify(servicesManager, 'No image', 'Open a chest X-ray in the viewport first.', 'error');
    return;
  }
  const { viewportId, displaySet } = target;
  const config = task?.config || {};
  const params: Record<string, unknown> = {};
  if ('instruction' in config) {
    params.instruction = state.instruction;
  }
  if ('report' in config) {
    params.report = state.report;
  }
  setState({ busy: true, status: `Running ${model}…`, answer: null, warnings: [], findings: [], error: null });
  const started = performance.now();
  try {
    const { result, label } = await new MonaiLabelClient(server).infer(model, displaySet.SeriesInstanceUID, params);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const answer = typeof result.answer === 'string' ? result.answer : null;
    const warnings = warningLines(result);
    let drawn = 'no label map returned';
    if (label) {
      const image = await decodeLabelPng(label);
      const labels = labelsOf(task);
      let segments: Segment[];
      if ('instruction' in config) {
        const lesion = lesionOf(state.instruction, lesionVocabulary(info)) || Object.keys(labels)[0] || 'lesion';
        segments = segmentsOf(image, labels, Object.fromEntries(Object.values(labels).map(id => [id, lesion])));
      } else {
        segments = segmentsOf(image, labels);
      }
      while (drawnSegmentations.length) {
        servicesManager.services.segmentationService.remove(drawnSegmentations.pop());
      }
      if (segments.length) {
        const title = `${model}: ${segments.map(s => s.label).join(', ')}`;
        const result = await drawLabelmap(servicesManager, extensionManager, viewportId, displaySet, image, title, segments);
        drawnSegmentations.push(result.segmentationId);
        drawn = segments.map(s => `${s.label} ${result.pixels[s.index] || 0} px`).join(', ');
      } else {
        drawn = 'empty mask';
      }
    }
    setState({
      busy: false,
      status: `Done in ${seconds} s: ${drawn}.`,
      answer,
      warnings,
      findings: findingLines(result),
      runs: getState().runs + 1,
    });
  } catch (err) {
    const detail = err instanceof ServerError ? err.detail : err instanceof Error ? err.message : String(err);
    const title = err instanceof ServerError && err.status ? `${model} refused (HTTP ${err.status})` : `${model} failed`;
    setState({ busy: false, status: `${title}.`, error: detail, runs: getState().runs + 1 });
    notify(servicesManager, title, detail, 'error');
  }
}

const styles = {
  panel: { padding: '8px', display: 'flex', flexDirection: 'column' as const, gap: '8px', color: '#d8e1ea', fontSize: '13px' },
  label: { fontSize: '11px', textTransform: 'uppercase' as const, color: '#8fa5b8', marginBottom: '2px' },
  input: { width: '100%', boxSizing: 'border-box' as const, background: '#0b1a2a', color: '#e8f0f8', border: '1px solid #3a4e63', borderRadius: '4px', padding: '6px' },
  button: { background: '#348cfd', color: 'white', border: 'none', borderRadius: '4px', padding: '6px 12px', cursor: 'pointer', fontWeight: 600 },
  box: { background: '#0b1a2a', border: '1px solid #3a4e63', borderRadius: '4px', padding: '6px', whiteSpace: 'pre-wrap' as const, wordBreak: 'break-word' as const },
};

export function IlsPanel(props: PanelProps) {
  const state = usePanelState();
  const [info, setInfo] = useState<ServerInfo | null>(cachedInfo);
  const [infoError, setInfoError] = useState<string | null>(null);

  const load = () => {
    setInfoError(null);
    new MonaiLabelClient(props.server)
      .info()
      .then(value => {
        cachedInfo = value;
        setInfo(value);
        const names = Object.keys(value.models);
        if (!names.includes(getState().model)) {
          setState({ model: names[0] || '' });
        }
      })
      .catch(err => setInfoError(err instanceof ServerError ? err.detail : String(err)));
  };
  useEffect(() => {
    if (!cachedInfo) {
      load();
    }
  }, []);

  if (!info) {
    return (
      <div style={styles.panel} data-testid="ils-panel">
        <div data-testid="ils-status">{infoError ? `Cannot read the server's models: ${infoError}` : 'Connecting to the MONAI Label server…'}</div>
        {infoError && (
          <button style={styles.button} onClick={load}>
            Retry
          </button>
        )}
      </div>
    );
  }
  const task = info.models[state.model];
  const config = task?.config || {};
  const unavailable = Object.entries(info.unavailable || {});
  return (
    <div style={styles.panel} data-testid="ils-panel">
      <div>
        <div style={styles.label}>Model</div>
        <select style={styles.input} data-testid="ils-model" value={state.model} disabled={state.busy} onChange={e => setState({ model: e.target.value })}>
          {Object.keys(info.models).map(name => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
        {task?.description && <div style={{ fontSize: '11px', color: '#8fa5b8', marginTop: '4px' }}>{task.description}</div>}
        {unavailable.map(([name, reason]) => (
          <div key={name} style={{ fontSize: '11px', color: '#f0b85a', marginTop: '4px' }} data-testid="ils-unavailable">
            {name} is not available: {reason}
          </div>
        ))}
      </div>
      {'instruction' in config && (
        <div>
          <div style={styles.label}>Instruction</div>
          <input
            style={styles.input}
            data-testid="ils-instruction"
            type="text"
            value={state.instruction}
            placeholder="Segment the effusion in the left lung base."
            onChange={e => setState({ instruction: e.target.value })}
            onKeyDown={e => {
              if (e.key === 'Enter' && !state.busy) {
                run(props, info);
              }
            }}
          />
        </div>
      )}
      {'report' in config && (
        <div>
          <div style={styles.label}>Report</div>
          <textarea
            style={{ ...styles.input, minHeight: '120px', resize: 'vertical' }}
            data-testid="ils-report"
            value={state.report}
            placeholder={'FINDINGS: ...\nIMPRESSION: ...'}
            onChange={e => setState({ report: e.target.value })}
          />
        </div>
      )}
      <div>
        <button style={{ ...styles.button, opacity: state.busy ? 0.5 : 1 }} data-testid="ils-run" disabled={state.busy || !task} onClick={() => run(props, info)}>
          {state.busy ? 'Running…' : 'Run'}
        </button>
      </div>
      <div data-testid="ils-status" data-runs={state.runs}>
        {state.status}
      </div>
      {state.error && (
        <div style={{ ...styles.box, borderColor: '#c0504d' }} data-testid="ils-error">
          {state.error}
        </div>
      )}
      {state.answer !== null && (
        <div>
          <div style={styles.label}>Answer</div>
          <div style={styles.box} data-testid="ils-answer">
            {state.answer}
          </div>
        </div>
      )}
      {state.warnings.length > 0 && (
        <div data-testid="ils-warnings">
          {state.warnings.map((w, i) => (
            <div key={i} style={{ color: '#f0b85a' }}>
              ⚠ {w}
            </div>
          ))}
        </div>
      )}
      {state.findings.length > 0 && (
        <div>
          <div style={styles.label}>Findings</div>
          <div style={styles.box} data-testid="ils-findings">
            {state.findings.join('\n')}
          </div>
        </div>
      )}
    </div>
  );
}
