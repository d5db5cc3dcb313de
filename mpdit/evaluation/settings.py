"""EvalSettings: every setting of `mpdit eval`, each default in one place; the command's options
are generated from these fields (mpdit.options). One command, four modes (`mode()`): Inception
metrics of SAMPLES against REF, FD-DINOv2, the digits classifier's figures, or --make-ref."""
from dataclasses import dataclass
from typing import Optional

from mpdit.options import check_choices, option

FEATURES = ("inception", "digits", "dinov2")


@dataclass(frozen=True)
class EvalSettings:
    files: tuple = option((), "REF.npz SAMPLES.npz (arr_0: uint8 NHWC)", flag="files", nargs="*", type=str,
                          metavar="FILE.npz")
    inception_weights: Optional[str] = option(None, "torch-fidelity's weights-inception-2015-12-05-6726825d.pth, or "
                                                    "NVIDIA's TorchScript inception-2015-12-05.pt / default_1.pt "
                                                    "(features only: no Inception Score)", metavar="FILE")
    batch_size: int = option(64, "images per Inception call")
    device: Optional[str] = option(None, "default: cuda when present")
    json: Optional[str] = option(None, "also write the result as JSON", metavar="OUT.json")
    cache: bool = option(True, "read and write the feature cache (--no-cache: neither)")
    progress: bool = option(True, "progress bars")
    features: str = option("inception", "digits: a classifier's features for the CPU digits demo (one SAMPLES.npz); "
                                        "dinov2: FD-DINOv2 (EDM2's), and with --make-ref DINOv2 statistics added to "
                                        "the reference", choices=FEATURES)
    dinov2_weights: Optional[str] = option(None, "--features dinov2: dinov2_vitl14_pretrain.pth (default: "
                                                 "$MPDIT_DINOV2_WEIGHTS, or torch's hub cache)", metavar="FILE")
    make_ref: Optional[str] = option(None, "write a reference batch (ADM layout) of these images to --out",
                                     metavar="IMAGES_DIR_OR_NPZ")
    out: Optional[str] = option(None, "--make-ref: the reference batch to write", metavar="REF.npz")
    image_size: Optional[int] = option(None, "--make-ref of a folder: centre-crop every image to this")
    ref_images: int = option(10000, "--make-ref: images kept in arr_0")

    def mode(self) -> str:
        """'make-ref', or the features compared ('inception', 'digits', 'dinov2'); ValueError for a
        setting the mode does not take, or the wrong number of files."""
        check_choices(self)  # the features
        if self.make_ref:
            if self.files or not self.out:
                raise ValueError("--make-ref: takes no positional files and needs --out REF.npz")
            if self.features == "digits":
                raise ValueError("--features digits: the digits figures need no reference (--make-ref writes "
                                 "Inception statistics, and DINOv2's with --features dinov2)")
            return "make-ref"
        if self.out or self.image_size:
            raise ValueError("--out / --image-size: only with --make-ref (the metrics go to stdout and --json)")
        expected = 1 if self.features == "digits" else 2
        if len(self.files) != expected:
            wanted = "one SAMPLES.npz" if expected == 1 else "REF.npz SAMPLES.npz"
            prefix = "" if self.features == "inception" else f"--features {self.features}: "
            raise ValueError(f"{prefix}expected {wanted}, got {len(self.files)} file(s)")
        return self.features
