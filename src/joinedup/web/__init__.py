"""The dashboard and JSON API (`joinedup serve`): FastAPI over a read-only warehouse.

`app.create_app` builds the application from one router per area (`signin`, `overview`,
`worklists`, `finance`, `data_quality`, `about`, `admin`) sharing `site`; `dashboard.Dashboard`
holds the figures it shows; `access` holds users, roles, sessions and the audit log;
`settings` the configuration.
"""
