/** Chunked batch writes of the declarative verbs (src/dataplane/batch.ts). */
export { CHUNK, writeBatch } from '../dataplane/batch';
