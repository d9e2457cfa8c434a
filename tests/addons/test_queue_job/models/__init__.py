from . import test_queue_job
from . import queue_job
