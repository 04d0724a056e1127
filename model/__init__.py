"""Model: pose-sequence classifiers, their evaluation and active learning (later issues)."""
