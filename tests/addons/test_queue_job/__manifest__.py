# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
{
    "name": "Job Queue: test models",
    "summary": "Models and jobs used by queue_job's tests only; never install in production",
    "version": "19.0.1.0.0",
    "author": "queue_job for Odoo 19 authors",
    "license": "LGPL-3",
    "category": "Hidden/Tests",
    "depends": ["queue_job"],
    "data": [
        "security/ir.model.access.csv",
        "data/queue_job_test_data.xml",
        "data/queue_job_oca_client_data.xml",
        "views/queue_job_views.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "test_queue_job/static/tests/tours/**/*",
        ],
    },
    "installable": True,
}
