/**
 * A BuildKit client written here: the Control gRPC API (`client.ts`), the session the client
 * serves back to the daemon (`session.ts`: health, FileSync, FileSend, Auth, Secrets), fsutil's
 * DiffCopy sender (`filesync.ts`), dialling unix/tcp(+mTLS)/ssh endpoints (`dial.ts`), on a
 * small gRPC layer over node:http2 (`grpc.ts`) and protobuf codec (`proto.ts`, `messages.ts`).
 *
 *   import { BuildkitClient, BuildSession } from '../buildkit/index.js';
 */
export * from './client.js';
export * from './dial.js';
export * from './filesync.js';
export { GrpcError } from './grpc.js';
export * from './session.js';
