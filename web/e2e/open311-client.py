"""An Open311 client written by someone else against civicgrid, unmodified.

The client is `georeport` from PyPI (requests + xmltodict). It lists the services, reads a service
definition, searches for requests and reads one back, in JSON and again in XML. georeport cannot
report, so the report is made as FixMyStreet would make it: a form-encoded POST with an API key of
the open311 channel, issued by the administrator through the API. Run by e2e/run.sh against the
server it starts; CIVICGRID_E2E_URL names that server, CIVICGRID_ADMIN_PASSWORD its administrator.
"""

import os
import sys

import requests
from georeport import GeoReport

base = os.environ["CIVICGRID_E2E_URL"]
root = f"{base}/open311/v2"


def api(method, path, token=None, **kw):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = requests.request(method, f"{base}/api/v1{path}", headers=headers, timeout=30, **kw)
    r.raise_for_status()
    return r.json()


admin = api("post", "/auth/login", json={"username": "admin", "password": os.environ["CIVICGRID_ADMIN_PASSWORD"]})["token"]
account = api("post", "/service-accounts", admin, json={"name": f"georeport-{os.getpid()}", "channel": "open311"})
key = api("post", f"/service-accounts/{account['id']}/keys", admin, json={})["key"]
grid = api("get", "/grids.geojson", admin)["features"][0]["geometry"]["coordinates"][0]
lon = sum(p[0] for p in grid[:-1]) / (len(grid) - 1)
lat = sum(p[1] for p in grid[:-1]) / (len(grid) - 1)

made = requests.post(
    f"{root}/requests.json",
    data={
        "api_key": key,
        "service_code": "01037",
        "lat": f"{lat:.6f}",
        "long": f"{lon:.6f}",
        "address_string": "清源路路灯 12 号杆",
        "description": "路灯整夜不亮",
        "attribute[lamp_fault]": "dark",
    },
    timeout=30,
)
assert made.status_code == 200, made.text
request_id = made.json()[0]["service_request_id"]
assert isinstance(request_id, str), made.text

for fmt in ("json", "xml"):
    client = GeoReport(root, output_format=fmt)
    services = client.get_service_list()
    lamp = next(s for s in services if s["service_code"] == "01037")
    assert lamp["service_name"] == "路灯异常", lamp
    assert str(lamp["metadata"]).lower() == "true", lamp
    definition = client.get_service_definition("01037")
    attributes = definition["attributes"]
    if fmt == "xml":
        attributes = attributes["attribute"]
    assert any(a["code"] == "lamp_fault" for a in attributes), definition
    found = client.get_service_requests(service_code="01037", status="open")
    if isinstance(found, dict):  # xmltodict gives a lone element as a dict
        found = [found]
    assert any(r["service_request_id"] == request_id for r in found), found
    one = client.get_service_request(request_id)
    assert one["service_request_id"] == request_id and one["status"] == "open", one
    assert one["service_code"] == "01037" and one["requested_datetime"].endswith("+08:00"), one
    print(f"georeport ({fmt}): {len(services)} services, definition of 01037, request {request_id} found and read")

print("the Open311 client works against civicgrid unmodified")
sys.exit(0)
