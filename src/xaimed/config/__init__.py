"""The workflow's config: schema checks, name checks, the record of config files."""
