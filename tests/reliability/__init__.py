"""The reliability suite: long runs, faults, fuzzing and a soak against the fake portal."""
