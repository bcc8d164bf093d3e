"""A job-level failure: the job stops and exits non-zero (a bad row never raises this)."""


class JobFailed(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
