"""Codecs: pure functions from request bytes to InferRequest and from InferResponse to bytes."""
