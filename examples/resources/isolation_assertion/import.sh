# An assertion is imported by its project's id and its own, joined by "/".
terraform import isolation_assertion.checkout_reaches_db prj_01a219d9-8387-7e2b-92d3-8b652eeeb47a/ast_01a219d9-9c1e-7f7b-8d3c-1f2e3d4c5b6a
