# A project is imported by its id.
terraform import isolation_project.payments prj_0123456789abcdef
