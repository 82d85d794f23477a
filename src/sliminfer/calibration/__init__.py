"""Per-model calibration: which layers find what the question needs, and the schedule that follows."""

from .run import CalibrationResult, CalibrationSpec, calibrate, write_preset

__all__ = ["CalibrationResult", "CalibrationSpec", "calibrate", "write_preset"]
