"""Sample quality: the ADM evaluator's five metrics (Inception Score, FID, sFID, precision,
recall) on a PyTorch port of its Inception network, reference batches for one's own data, and
a digits-classifier figure for the CPU demo."""
from mpdit.evaluation.evaluator import METRICS, evaluate, format_result
from mpdit.evaluation.reference import make_reference

__all__ = ["METRICS", "evaluate", "format_result", "make_reference"]
