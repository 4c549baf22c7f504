/** Node-only entry point of @trirun/packing: file I/O for safetensors and TriRun checkpoints. */
export {
  type ConvertProgress,
  type ConvertSummary,
  DEFAULT_INCLUDE,
  type PackCheckpointOptions,
  type PlannedTensor,
  packCheckpoint,
  type UnpackCheckpointOptions,
  unpackCheckpoint,
} from "./convert.js";
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
export {
  type OpenedTriRunCheckpoint,
  openTriRunCheckpoint,
  readConfig,
  writeTriRunCheckpoint,
} from "./trirun.js";
