"""traceaudit: which process held my file, for how long, and how long should I have retried?"""

__version__ = "0.1.0"
