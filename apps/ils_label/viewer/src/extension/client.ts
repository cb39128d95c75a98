/**
 * A small client for the MONAI Label server's REST API (`/info/`, `/infer/{model}`), as the panel needs it.
 *
 * Infer asks for `output=all`: the answer is `multipart/form-data` with a `params` part (the task's JSON
 * result: ROSALIA's answer text, warnings, grounding's findings) and an `image` part (the label map), which
 * the browser's `Response.formData()` parses. MONAI Label's own OHIF plugin asks for `output=image` and so
 * never sees the JSON result.
 */

export interface ModelInfo {
  type?: string;
  labels?: Record<string, number> | string[];
  dimension?: number;
  description?: string;
  config?: Record<string, unknown>;
}

export interface ServerInfo {
  name?: string;
  version?: string;
  models: Record<string, ModelInfo>;
  unavailable?: Record<string, string>;
  lesion_types?: string[];
}

export interface InferResult {
  /** The task's JSON result (`params` part). */
  result: Record<string, any>;
  /** The label map file (`image` part): a PNG with label ids as pixel values. */
  label: Blob | null;
}

/** A failed request, with the server's `detail` (what was wrong) when it sent one. */
export class ServerError extends Error {
  constructor(
    public status: number,
    public detail: string
  ) {
    super(detail);
    this.name = 'ServerError';
  }
}

function joinUrl(server: string, path: string): string {
  return `${server.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

async function failure(response: Response, what: string): Promise<ServerError> {
  let detail = '';
  try {
    const body = await response.clone().json();
    const value = body?.detail;
    detail = typeof value === 'string' ? value : value ? JSON.stringify(value) : '';
  } catch {
    try {
      detail = (await response.text()).slice(0, 500);
    } catch {
      detail = '';
    }
  }
  return new ServerError(response.status, detail || `${what} failed: HTTP ${response.status} ${response.statusText}`);
}

export class MonaiLabelClient {
  constructor(public server: string) {}

  async info(): Promise<ServerInfo> {
    let response: Response;
    try {
      response = await fetch(joinUrl(this.server, 'info/'), { credentials: 'same-origin' });
    } catch (err) {
      throw new ServerError(0, `The MONAI Label server at ${this.server || window.location.origin} cannot be reached (${err}).`);
    }
    if (!response.ok) {
      throw await failure(response, 'GET /info/');
    }
    const info = (await response.json()) as ServerInfo;
    info.models = info.models || {};
    return info;
  }

  /** `POST /infer/{model}?image={id}&output=all` with `params` as MONAI Label's JSON form field. */
  async infer(model: string, image: string, params: Record<string, unknown>, signal?: AbortSignal): Promise<InferResult> {
    const url = joinUrl(this.server, `infer/${encodeURIComponent(model)}`) + `?image=${encodeURIComponent(image)}&output=all`;
    const form = new FormData();
    form.append('params', JSON.stringify(params));
    let response: Response;
    try {
      response = await fetch(url, { method: 'POST', body: form, signal, credentials: 'same-origin' });
    } catch (err) {
      throw new ServerError(0, `The MONAI Label server cannot be reached (${err}).`);
    }
    if (!response.ok) {
      throw await failure(response, `POST /infer/${model}`);
    }
    const type = response.headers.get('content-type') || '';
    if (type.includes('application/json')) {
      // MONAI Label answers with the JSON alone when the task wrote no label file
      return { result: await response.json(), label: null };
    }
    const parts = await response.formData();
    const json = parts.get('params');
    const file = parts.get('image');
    const text = typeof json === 'string' ? json : json ? await (json as Blob).text() : '{}';
    return { result: JSON.parse(text || '{}'), label: file instanceof Blob ? file : null };
  }
}
