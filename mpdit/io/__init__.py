"""Files in and out: checked, atomic writes; training checkpoint files; EMA exports and the
models read back from them; image files. Below everything but models (imports point down)."""
from mpdit.io.checkpoint_file import CheckpointError, load_checkpoint, save_checkpoint
from mpdit.io.export import EXPORT_FORMAT, build, export_ema, export_metadata, load, read, write_safetensors
from mpdit.io.files import atomic_path, check_output, check_writable

__all__ = ["EXPORT_FORMAT", "CheckpointError", "atomic_path", "build", "check_output", "check_writable", "export_ema",
           "export_metadata", "load", "load_checkpoint", "read", "save_checkpoint", "write_safetensors"]
