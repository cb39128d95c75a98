/** The few tools a radiograph needs: window/level, pan, zoom, reset (OHIF 3.12 toolbar button format). */
import { TOOL_GROUP_ID } from '../ids';

const setToolActive = { commandName: 'setToolActiveToolbar', commandOptions: { toolGroupIds: [TOOL_GROUP_ID] } };

export const toolbarButtons = [
  { id: 'WindowLevel', uiType: 'ohif.toolButton', props: { icon: 'tool-window-level', label: 'Window Level', commands: setToolActive, evaluate: 'evaluate.cornerstoneTool' } },
  { id: 'Pan', uiType: 'ohif.toolButton', props: { icon: 'tool-move', label: 'Pan', commands: setToolActive, evaluate: 'evaluate.cornerstoneTool' } },
  { id: 'Zoom', uiType: 'ohif.toolButton', props: { icon: 'tool-zoom', label: 'Zoom', commands: setToolActive, evaluate: 'evaluate.cornerstoneTool' } },
  { id: 'Reset', uiType: 'ohif.toolButton', props: { icon: 'tool-reset', label: 'Reset View', commands: 'resetViewport', evaluate: 'evaluate.action' } },
];

export const primaryTools = ['WindowLevel', 'Pan', 'Zoom', 'Reset'];
