"""Where artifacts come from (local paths, gs://), and each deployed model's lifecycle."""
