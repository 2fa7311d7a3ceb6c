import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeJson, MediaType } from '../oci/index.js';
import { renderTemplate } from './inspect.js';
import { toDocker } from './push.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

test('OCI manifest → Docker schema 2', () => {
  const m = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: D('a'), size: 1 },
    layers: [{ mediaType: MediaType.OciLayerGzip, digest: D('b'), size: 2 }],
  };
  const r = toDocker(encodeJson(m), MediaType.OciManifest);
  assert.equal(r.mediaType, MediaType.DockerManifest);
  const j = JSON.parse(r.bytes.toString());
  assert.deepEqual(Object.keys(j).slice(0, 2), ['schemaVersion', 'mediaType']);
  assert.equal(j.config.mediaType, MediaType.DockerConfig);
  assert.equal(j.layers[0].mediaType, MediaType.DockerLayerGzip);
});

test('OCI index → Docker manifest list', () => {
  const i = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: D('c'),
        size: 3,
        platform: { os: 'linux', architecture: 'arm64' },
      },
    ],
  };
  const r = toDocker(encodeJson(i), MediaType.OciIndex);
  assert.equal(r.mediaType, MediaType.DockerManifestList);
  assert.equal(JSON.parse(r.bytes.toString()).manifests[0].mediaType, MediaType.DockerManifest);
});

test('a zstd layer has no Docker equivalent', () => {
  const m = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: D('a'), size: 1 },
    layers: [{ mediaType: MediaType.OciLayerZstd, digest: D('b'), size: 2 }],
  };
  assert.throws(
    () => toDocker(encodeJson(m), MediaType.OciManifest),
    /tar\+zstd has no Docker schema 2 equivalent/,
  );
});

test('templates: json and fields, Go-style HTML escapes', () => {
  const data = { name: 'r', manifest: { digest: 'sha256:x', size: 3, annotations: { a: '<b>' } } };
  assert.equal(renderTemplate('{{.Name}}', data), 'r');
  assert.equal(renderTemplate('{{ .Manifest.Digest }}/{{.Manifest.Size}}', data), 'sha256:x/3');
  assert.equal(renderTemplate('{{json .Manifest.Annotations}}', data), '{\n  "a": "\\u003cb\\u003e"\n}');
  assert.throws(
    () => renderTemplate('{{.Nope}}', data),
    /^TemplateError: template: :1:2: executing "" at <.Nope>: can't evaluate field Nope in type struct$/,
  );
  assert.throws(
    () => renderTemplate('{{range .Manifest}}', data),
    /^TemplateError: template: :1:19: unexpected EOF$/,
  );
  assert.equal(
    renderTemplate('{{range $k, $v := .Manifest.Annotations}}{{$k}}={{$v}}{{end}}', data),
    'a=<b>',
  );
});
