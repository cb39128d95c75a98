#!/usr/bin/env node
/**
 * Assemble the chest X-ray OHIF viewer: the pinned prebuilt `@ohif/app` dist from npm, our extension and
 * mode bundled with esbuild, and an app-config.js pointing at the MONAI Label server's DICOMweb proxy.
 *
 *   node build.mjs [--out dist] [--base /viewer/] [--server URL]
 *
 * --base    URL path the viewer is served under (the prebuilt dist assumes "/"; its absolute paths are
 *           rewritten). serve.py mounts it at /viewer/.
 * --server  MONAI Label server URL; default: the viewer's own origin and base path minus the viewer's folder.
 *
 * The OHIF tarball comes from `npm pack` (its dependencies are bundled into dist/, so it is not installed)
 * and is checked against the integrity pinned in package.json before use.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const out = path.resolve(here, option('out', 'dist'));
let base = option('base', '/viewer/');
if (!base.startsWith('/')) base = `/${base}`;
if (!base.endsWith('/')) base = `${base}/`;
const server = option('server', '');
const cache = path.join(here, 'build');
// parts of the prebuilt viewer our mode never loads: source maps, the ONNX runtime of the AI segmentation
// tools and the whole-slide microscopy viewer (together ~160 MB)
const SKIPPED = [/\.map$/, /^ort(\/|$)/, /^dicom-microscopy-viewer(\/|$)/];

function fail(message) {
  console.error(`make viewer: ${message}`);
  process.exit(1);
}

function fetchViewer() {
  const { package: name, version, integrity } = pkg.ohifViewer;
  const tarball = path.join(cache, `${name.replace('@', '').replace('/', '-')}-${version}.tgz`);
  if (!fs.existsSync(tarball)) {
    fs.mkdirSync(cache, { recursive: true });
    console.log(`npm pack ${name}@${version}`);
    execFileSync('npm', ['pack', `${name}@${version}`, '--pack-destination', cache, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const [algorithm, expected] = integrity.split('-');
  const actual = createHash(algorithm).update(fs.readFileSync(tarball)).digest('base64');
  if (actual !== expected) {
    fs.rmSync(tarball);
    fail(`${path.basename(tarball)} does not match the integrity pinned in package.json (${algorithm} ${actual}); removed it.`);
  }
  const unpacked = path.join(cache, `ohif-app-${version}`);
  if (!fs.existsSync(path.join(unpacked, 'package', 'dist', 'index.html'))) {
    fs.rmSync(unpacked, { recursive: true, force: true });
    fs.mkdirSync(unpacked, { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
  }
  return path.join(unpacked, 'package', 'dist');
}

function copyDist(source) {
  fs.rmSync(out, { recursive: true, force: true });
  fs.cpSync(source, out, {
    recursive: true,
    filter: file => {
      const relative = path.relative(source, file).split(path.sep).join('/');
      return !relative || !SKIPPED.some(pattern => pattern.test(relative));
    },
  });
}

/** The prebuilt dist assumes it is served at "/": rewrite its absolute paths to `base`. */
function rewriteBase() {
  if (base === '/') return;
  const edit = (file, replacements) => {
    const full = path.join(out, file);
    let text = fs.readFileSync(full, 'utf8');
    for (const [pattern, value] of replacements) {
      const next = text.replace(pattern, value);
      if (next === text && !pattern.optional) {
        fail(`${file}: expected to find ${pattern} while rewriting paths for ${base}; is this the pinned @ohif/app?`);
      }
      text = next;
    }
    fs.writeFileSync(full, text);
  };
  edit('index.html', [
    [/window\.PUBLIC_URL = '\/'/g, `window.PUBLIC_URL = '${base}'`],
    [/(href|src)="\/(?!\/)/g, `$1="${base}`],
  ]);
  for (const file of fs.readdirSync(out)) {
    if (file.endsWith('.js')) {
      const full = path.join(out, file);
      const text = fs.readFileSync(full, 'utf8');
      if (text.includes('__webpack_require__.p = "/";')) {
        fs.writeFileSync(full, text.split('__webpack_require__.p = "/";').join(`__webpack_require__.p = "${base}";`));
      }
    } else if (file.endsWith('.css')) {
      const full = path.join(out, file);
      fs.writeFileSync(full, fs.readFileSync(full, 'utf8').replace(/url\(\/(?!\/)/g, `url(${base}`));
    }
  }
  edit('manifest.json', [[/"\/assets\//g, `"${base}assets/`]]);
}

async function bundle() {
  const target = path.join(out, 'ils');
  await esbuild.build({
    entryPoints: { extension: path.join(here, 'src/extension/index.tsx'), mode: path.join(here, 'src/mode/index.ts') },
    outdir: target,
    bundle: true,
    format: 'esm',
    target: 'es2020',
    minify: true,
    sourcemap: false,
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    legalComments: 'none',
    logLevel: 'warning',
  });
}

function appConfig() {
  const serverExpression = server
    ? JSON.stringify(server.replace(/\/+$/, ''))
    : `window.location.origin + ${JSON.stringify(base.replace(/[^/]+\/$/, '').replace(/\/$/, ''))}`;
  const text = `/* Written by apps/ils_label/viewer/build.mjs: OHIF ${pkg.ohifViewer.version} for the monai-ils MONAI Label app. */
(function () {
  var server = ${serverExpression};
  window.config = {
    name: 'monai-ils chest X-ray viewer',
    routerBasename: ${JSON.stringify(base)},
    showStudyList: true,
    extensions: [${JSON.stringify(`${base}ils/extension.js`)}],
    modes: [${JSON.stringify(`${base}ils/mode.js`)}],
    customizationService: {},
    defaultDataSourceName: 'dicomweb',
    investigationalUseDialog: { option: 'never' },
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    maxNumberOfWebWorkers: 2,
    monaiLabel: { server: server },
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'dicomweb',
        configuration: {
          friendlyName: 'DICOMweb through the MONAI Label server',
          name: 'monailabel',
          qidoRoot: server + '/proxy/dicom/qido',
          wadoRoot: server + '/proxy/dicom/wado',
          wadoUriRoot: server + '/proxy/dicom/wado',
          qidoSupportsIncludeField: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: false },
        },
      },
    ],
  };
})();
`;
  fs.writeFileSync(path.join(out, 'app-config.js'), text);
}

const started = Date.now();
const source = fetchViewer();
copyDist(source);
rewriteBase();
await bundle();
appConfig();
fs.writeFileSync(path.join(out, 'ils', 'VERSION.json'), JSON.stringify({ ohif: pkg.ohifViewer.version, viewer: pkg.version, base }, null, 1));
console.log(`viewer assembled in ${path.relative(process.cwd(), out) || out} (OHIF ${pkg.ohifViewer.version}, base ${base}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
