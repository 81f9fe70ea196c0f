"""Monthly customer tiering pipeline."""
