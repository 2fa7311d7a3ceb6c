/**
 * Media types of the OCI image spec and Docker's image manifest v2 schema 2, as constants,
 * with predicates that group them. Compare against these names, never against literals.
 */
export const MediaType = {
  OciLayout: 'application/vnd.oci.layout.header.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  /** Schema 1 manifests are recognised only to be refused with a clear message. */
  DockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  InTotoAttestation: 'application/vnd.in-toto+json',
} as const;

export type MediaTypeName = (typeof MediaType)[keyof typeof MediaType];

export function isIndexType(mt: string | undefined): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isManifestType(mt: string | undefined): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isConfigType(mt: string | undefined): boolean {
  return mt === MediaType.OciConfig || mt === MediaType.DockerConfig;
}

export function isLayerType(mt: string | undefined): boolean {
  return (
    mt === MediaType.OciLayer ||
    mt === MediaType.OciLayerGzip ||
    mt === MediaType.OciLayerZstd ||
    mt === MediaType.OciLayerNondistributable ||
    mt === MediaType.OciLayerNondistributableGzip ||
    mt === MediaType.DockerLayerGzip ||
    mt === MediaType.DockerLayerForeignGzip
  );
}

export type Compression = 'gzip' | 'zstd' | 'uncompressed';

/** How a layer media type is compressed. */
export function layerCompression(mt: string): Compression {
  if (mt.endsWith('+gzip') || mt.endsWith('.tar.gzip')) return 'gzip';
  if (mt.endsWith('+zstd')) return 'zstd';
  return 'uncompressed';
}

/**
 * The layer media type for a compression. Docker manifests have a type only for gzip; for
 * uncompressed and zstd layers the OCI types are used there too, as BuildKit does.
 */
export function layerMediaType(compression: Compression, opts: { oci?: boolean } = {}): string {
  if (compression === 'gzip') return opts.oci === false ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip;
  if (compression === 'zstd') return MediaType.OciLayerZstd;
  return MediaType.OciLayer;
}
