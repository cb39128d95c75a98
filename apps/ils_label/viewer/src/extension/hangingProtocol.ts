/** One stack viewport showing the radiograph: a CR/DX is a single frame, which no MPR volume layout can show. */
import { CXR_MODALITIES, HANGING_PROTOCOL_ID, TOOL_GROUP_ID } from '../ids';

const imageSelector = {
  seriesMatchingRules: [
    // a display set with pixels (not an SR/SEG), preferably the radiograph named in the URL
    { attribute: 'numImageFrames', constraint: { greaterThan: { value: 0 } }, required: true },
    ...CXR_MODALITIES.map(modality => ({ weight: 10, attribute: 'Modality', constraint: { equals: { value: modality } } })),
    { weight: 20, attribute: 'isDisplaySetFromUrl', constraint: { equals: true } },
  ],
};

const stackViewport = {
  viewportOptions: { viewportType: 'stack', viewportId: 'cxr', toolGroupId: TOOL_GROUP_ID, allowUnmatchedView: true },
  displaySets: [{ id: 'cxrImage' }],
};

export const cxrSingleProtocol = {
  id: HANGING_PROTOCOL_ID,
  name: 'Chest X-ray: one stack viewport',
  locked: true,
  protocolMatchingRules: [],
  toolGroupIds: [TOOL_GROUP_ID],
  numberOfPriorsReferenced: 0,
  defaultViewport: { ...stackViewport, displaySets: [{ id: 'cxrImage', matchedDisplaySetsIndex: -1 }] },
  displaySetSelectors: { cxrImage: imageSelector },
  stages: [
    {
      name: 'single',
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 1 } },
      viewports: [stackViewport],
    },
  ],
};
