# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The tables the tests without Odoo create must match the ORM's tables."""

import os
import re

from odoo.tests import TransactionCase, tagged

import odoo.addons.queue_job as queue_job

PURE_FIXTURE = os.path.join(os.path.dirname(queue_job.__file__), "tests", "pure", "conftest.py")


@tagged("post_install", "-at_install")
class TestPureSchema(TransactionCase):
    def test_pure_tables_are_a_subset_of_the_orm_tables(self):
        with open(PURE_FIXTURE) as source:
            ddl = re.search(r'QUEUE_JOB_TABLES = """(.*?)"""', source.read(), re.S)[1]
        for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", ddl, re.S):
            declared = {
                line.split()[0]: line.split()[1].rstrip(",")
                for line in body.strip().splitlines()
                if line.strip() and not line.strip().startswith("PRIMARY KEY")
            }
            self.env.cr.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s",
                (table,),
            )
            actual = dict(self.env.cr.fetchall())
            for column, kind in declared.items():
                with self.subTest(table=table, column=column):
                    self.assertIn(column, actual)
                    self.assertTrue(
                        actual[column].startswith(_TYPES.get(kind, kind)),
                        f"{table}.{column}: {kind} in the fixture, {actual[column]} in Odoo",
                    )


# information_schema spells the fixture's short type names out.
_TYPES = {
    "serial": "integer",
    "varchar": "character varying",
    "timestamp": "timestamp without time zone",
    "double": "double precision",
}
