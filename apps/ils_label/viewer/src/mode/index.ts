/**
 * OHIF mode for chest X-rays (CR/DX): one stack viewport, the study's series on the left, our ILS panel and
 * OHIF's segmentation list on the right. Built with esbuild into one ES module imported by URL.
 */
import { CXR_MODALITIES, EXTENSION_ID, HANGING_PROTOCOL_ID, MODE_ID, PANEL_NAME, TOOL_GROUP_ID } from '../ids';
import { toolbarButtons, primaryTools } from './toolbar';

const ohif = {
  layout: '@ohif/extension-default.layoutTemplateModule.viewerLayout',
  sopClassHandler: '@ohif/extension-default.sopClassHandlerModule.stack',
  seriesList: '@ohif/extension-default.panelModule.seriesList',
  viewport: '@ohif/extension-cornerstone.viewportModule.cornerstone',
  segmentations: '@ohif/extension-cornerstone.panelModule.panelSegmentation',
};

// OHIF imports each key that is not one of its built-in extensions, so ours is named by its URL: the
// bundle beside this one (the same module instance app-config.js loaded, so it registers once)
const EXTENSION_URL = new URL('./extension.js', import.meta.url).href;

const extensionDependencies = {
  '@ohif/extension-default': '^3.0.0',
  '@ohif/extension-cornerstone': '^3.0.0',
  [EXTENSION_URL]: '^0.1.0',
};

/** Valid when the study has a CR or DX series; the description says why not otherwise. */
export function isValidMode({ modalities }: { modalities: string }) {
  const present = (modalities || '').split('\\').filter(Boolean);
  const valid = present.some(m => CXR_MODALITIES.includes(m));
  return {
    valid,
    description: valid
      ? 'Chest X-ray instruction-guided lesion segmentation'
      : `Chest X-ray ILS needs a ${CXR_MODALITIES.join(' or ')} series; this study has ${present.join(', ') || 'no modality'}.`,
  };
}

function initToolGroup(extensionManager: any, toolGroupService: any) {
  const { toolNames, Enums } = extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.tools').exports;
  toolGroupService.createToolGroupAndAddTools(TOOL_GROUP_ID, {
    active: [
      { toolName: toolNames.WindowLevel, bindings: [{ mouseButton: Enums.MouseBindings.Primary }] },
      { toolName: toolNames.Pan, bindings: [{ mouseButton: Enums.MouseBindings.Auxiliary }] },
      { toolName: toolNames.Zoom, bindings: [{ mouseButton: Enums.MouseBindings.Secondary }, { numTouchPoints: 2 }] },
    ],
    passive: [{ toolName: toolNames.Length }, { toolName: toolNames.Probe }],
  });
}

function modeFactory() {
  return {
    id: MODE_ID,
    routeName: 'ils-cxr',
    displayName: 'Chest X-ray ILS',
    onModeEnter({ servicesManager, extensionManager }: any) {
      const { toolbarService, toolGroupService, measurementService } = servicesManager.services;
      measurementService.clearMeasurements();
      initToolGroup(extensionManager, toolGroupService);
      toolbarService.register(toolbarButtons);
      toolbarService.updateSection(toolbarService.constructor.TOOLBAR_SECTIONS?.primary ?? 'primary', primaryTools);
    },
    onModeExit({ servicesManager }: any) {
      const { toolGroupService, segmentationService, cornerstoneViewportService, uiDialogService, uiModalService } = servicesManager.services;
      uiDialogService.hideAll();
      uiModalService.hide();
      toolGroupService.destroy();
      segmentationService.destroy();
      cornerstoneViewportService.destroy();
    },
    validationTags: { study: [], series: [] },
    isValidMode,
    routes: [
      {
        path: 'ils-cxr',
        layoutTemplate: () => ({
          id: ohif.layout,
          props: {
            leftPanels: [ohif.seriesList],
            leftPanelClosed: true,
            rightPanels: [`${EXTENSION_ID}.panelModule.${PANEL_NAME}`, ohif.segmentations],
            rightPanelResizable: true,
            viewports: [{ namespace: ohif.viewport, displaySetsToDisplay: [ohif.sopClassHandler] }],
          },
        }),
      },
    ],
    extensions: extensionDependencies,
    hangingProtocol: HANGING_PROTOCOL_ID,
    sopClassHandlers: [ohif.sopClassHandler],
  };
}

export default { id: MODE_ID, modeFactory, extensionDependencies };
