"""The Scheduler: urgency tiers, due times, waves and concurrency."""

from actors.scheduling._schedule import STREAM_CONCURRENCY
from actors.scheduling.scheduler import Scheduler

__all__ = ["STREAM_CONCURRENCY", "Scheduler"]
