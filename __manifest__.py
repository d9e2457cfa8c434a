# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
{
    "name": "Job Queue",
    "summary": "Background jobs with exact job graphs and a PostgreSQL-coordinated runner",
    "version": "19.0.3.0.0",
    "author": "queue_job for Odoo 19 authors",
    "license": "LGPL-3",
    "category": "Technical",
    "depends": ["mail", "web"],
    "data": [
        "security/security.xml",
        "security/ir.model.access.csv",
        "data/queue_data.xml",
        "data/mail_message_subtype_data.xml",
        "views/queue_job_views.xml",
        "views/queue_job_channel_views.xml",
        "views/queue_job_function_views.xml",
        "views/queue_job_overview_views.xml",
        "wizards/queue_job_action_wizard_views.xml",
        "views/queue_job_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "queue_job/static/src/**/*",
        ],
    },
    "installable": True,
    "application": True,
    "post_load": "post_load",
    "uninstall_hook": "uninstall_hook",
}
