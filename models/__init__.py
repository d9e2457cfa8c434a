# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from . import base
from . import queue_job_config_mixin
from . import queue_job_channel
from . import queue_job_function
from . import queue_job
from . import queue_job_graph
from . import queue_job_overview
