/** Names shared by the extension and the mode (one place, so the mode's references cannot drift). */
export const EXTENSION_ID = '@monai-ils/extension-cxr';
export const MODE_ID = '@monai-ils/mode-cxr';
export const PANEL_NAME = 'ils';
export const HANGING_PROTOCOL_ID = 'ils-cxr-single';
export const TOOL_GROUP_ID = 'default';
/** Modalities of radiographs the mode is offered for. */
export const CXR_MODALITIES = ['CR', 'DX'];
