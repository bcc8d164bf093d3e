"""A scoring script whose init() fails: the server must never turn ready."""


def init():
    raise RuntimeError("the model file is missing")


def run(raw_data):
    return raw_data
