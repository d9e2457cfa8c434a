# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
{
    "name": "queue_job benchmark jobs",
    "summary": "Trivial job methods that bench/ enqueues, identical for every queue_job",
    "version": "19.0.1.0.0",
    "author": "queue_job for Odoo 19 authors",
    "license": "LGPL-3",
    "category": "Hidden",
    # Only base: the jobs are delayed through whichever queue_job is installed
    # next to it, so this addon must not pick one.
    "depends": ["base"],
    "installable": True,
}
