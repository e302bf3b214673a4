"""The workers' glue between the database and the pure core (modeling/core/), by concern.

Only Celery tasks (modeling/tasks.py) and management commands call in here; the web side asks
for work through modeling/scheduling.py and never imports these modules, so it never loads
torch.
"""
