"""Scheduling model calls: admission, deadlines and the threads that run the framework."""
