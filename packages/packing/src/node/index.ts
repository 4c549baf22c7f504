/** Node-only entry point of @trirun/packing: file I/O for safetensors and TriRun checkpoints. */
export {
  type CheckpointLocation,
  fileSource,
  locateCheckpoint,
  openCheckpoint,
  openSafetensorsFile,
  SafetensorsFileWriter,
  SHARD_INDEX_FILE,
  writeSafetensorsFile,
} from "./files.js";
