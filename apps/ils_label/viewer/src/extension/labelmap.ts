/**
 * Label maps from the server drawn as a labelmap segmentation of the displayed stack image.
 *
 * MONAI Label's OHIF plugin writes results only into volume labelmaps, which a single-frame CR/DX never
 * has. Here the labelmap is created for the displayed display set (one derived image per source image,
 * OHIF's `createLabelmapForDisplaySet`), its pixels are written directly from the returned label map
 * and a data-modified event makes cornerstone redraw it.
 */

export interface LabelImage {
  rows: number;
  columns: number;
  /** Label id per pixel, row-major (`rows * columns`), as the image's own pixel data. */
  data: Uint8Array;
}

/** Decode a label PNG (grey, label ids as values) without colour conversion, which would alter the ids. */
export async function decodeLabelPng(blob: Blob): Promise<LabelImage> {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  if (!context) {
    throw new Error('This browser cannot decode the label image (no 2-D canvas).');
  }
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const data = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0; i < data.length; i++) {
    data[i] = rgba[4 * i];
  }
  bitmap.close();
  return { rows: canvas.height, columns: canvas.width, data };
}

export interface Segment {
  /** Label id in the label map (the segment index). */
  index: number;
  /** Lesion name shown in OHIF's segmentation list. */
  label: string;
}

export interface DrawnLabelmap {
  segmentationId: string;
  /** Foreground pixels written per segment index. */
  pixels: Record<number, number>;
}

/**
 * Create a labelmap segmentation named `title` for the viewport's display set, add it to the viewport
 * and write `label` into it; label ids not in `segments` are left out (not drawn).
 */
export async function drawLabelmap(
  servicesManager: any,
  extensionManager: any,
  viewportId: string,
  displaySet: any,
  label: LabelImage,
  title: string,
  segments: Segment[]
): Promise<DrawnLabelmap> {
  const { segmentationService } = servicesManager.services;
  const { cornerstone, cornerstoneTools } = extensionManager
    .getModuleEntry('@ohif/extension-cornerstone.utilityModule.common')
    .exports.getCornerstoneLibraries();

  const imageId: string | undefined = displaySet.imageIds?.[0];
  const source = imageId ? cornerstone.cache.getImage(imageId) : undefined;
  if (source && (source.rows !== label.rows || source.columns !== label.columns)) {
    throw new Error(
      `The label map is ${label.rows} x ${label.columns} pixels but the displayed image is ${source.rows} x ${source.columns}; it was computed for another image.`
    );
  }
  const segmentConfig: Record<number, { label: string; active: boolean }> = {};
  segments.forEach((segment, i) => {
    segmentConfig[segment.index] = { label: segment.label, active: i === 0 };
  });
  const segmentationId: string = await segmentationService.createLabelmapForDisplaySet(displaySet, {
    label: title,
    segments: segmentConfig,
  });
  await segmentationService.addSegmentationRepresentation(viewportId, { segmentationId });

  const segmentation = cornerstoneTools.segmentation.state.getSegmentation(segmentationId);
  const labelmapImageIds: string[] = segmentation?.representationData?.Labelmap?.imageIds || [];
  if (labelmapImageIds.length !== 1) {
    throw new Error(`Expected one labelmap image for the radiograph, found ${labelmapImageIds.length}; is this a multi-frame series?`);
  }
  const labelmapImage = cornerstone.cache.getImage(labelmapImageIds[0]);
  const voxelManager = labelmapImage.voxelManager;
  const scalars = voxelManager?.getScalarData ? voxelManager.getScalarData() : labelmapImage.getPixelData();
  if (scalars.length !== label.data.length) {
    throw new Error(`The labelmap has ${scalars.length} pixels but the label map ${label.data.length}.`);
  }
  const wanted = new Set(segments.map(s => s.index));
  const pixels: Record<number, number> = {};
  for (let i = 0; i < scalars.length; i++) {
    const value = label.data[i];
    if (value && wanted.has(value)) {
      scalars[i] = value;
      pixels[value] = (pixels[value] || 0) + 1;
    } else {
      scalars[i] = 0;
    }
  }
  if (voxelManager?.setScalarData) {
    voxelManager.setScalarData(scalars);
  }
  cornerstoneTools.segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(segmentationId);
  return { segmentationId, pixels };
}

/** Segments of a label map: the ids present, named from the task's labels (`{name: id}` in `/info`). */
export function segmentsOf(label: LabelImage, labels: Record<string, number>, names: Record<number, string> = {}): Segment[] {
  const present = new Set<number>();
  for (const value of label.data) {
    if (value) {
      present.add(value);
    }
  }
  const byId: Record<number, string> = {};
  for (const [name, id] of Object.entries(labels)) {
    byId[id] = name;
  }
  return [...present].sort((a, b) => a - b).map(index => ({ index, label: names[index] || byId[index] || `label ${index}` }));
}
