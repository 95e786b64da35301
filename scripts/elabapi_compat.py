#!/usr/bin/env python3
"""Compatibility check of Cahier's API v2 with eLabFTW's official Python client.

Runs the calls eLabFTW's example scripts make, through `elabapi_python`, against a Cahier
server: create, read, patch and list experiments (q, limit, order), add a comment and a step,
link two experiments, read users/me and teams, make an experiment template with extra fields
(metadata), create an experiment from it, set a field, search by field; make a resource
category, an item in it, link it from an experiment, list items by category. Exits non-zero on
the first mismatch.

Environment: API_HOST (the server's base URL, without /api/v2) and API_KEY (a read-write key).
Driven by `official_python_client_works_against_cahier` in
`crates/cahier/tests/it/api_subresources.rs`, which makes a venv with
`pip install elabapi-python`.
"""

import json
import os
import sys
import uuid

import elabapi_python
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def check(condition, what):
    if not condition:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def new_id(headers):
    """eLabFTW's scripts take the new id from the last segment of Location."""
    location = headers.get("Location")
    check(location is not None, "POST answers a Location header")
    return int(location.split("/").pop())


def main():
    host = os.environ["API_HOST"].rstrip("/")
    key = os.environ["API_KEY"]

    configuration = elabapi_python.Configuration()
    configuration.api_key["api_key"] = key
    configuration.api_key_prefix["api_key"] = ""
    configuration.host = f"{host}/api/v2"
    configuration.debug = False
    configuration.verify_ssl = False
    client = elabapi_python.ApiClient(configuration)
    client.set_default_header(header_name="Authorization", header_value=key)

    experiments = elabapi_python.ExperimentsApi(client)
    comments = elabapi_python.CommentsApi(client)
    steps = elabapi_python.StepsApi(client)
    links = elabapi_python.LinksToExperimentsApi(client)
    users = elabapi_python.UsersApi(client)
    teams = elabapi_python.TeamsApi(client)

    # Create (201 + Location), read, patch.
    marker = uuid.uuid4().hex[:12]
    _, status, headers = experiments.post_experiment_with_http_info(
        body={"title": f"Python client check {marker}", "body": "made by elabapi_python", "tags": ["compat"]}
    )
    check(status == 201, f"POST /experiments answers 201 (got {status})")
    first = new_id(headers)
    exp = experiments.get_experiment(first)
    check(exp.title == f"Python client check {marker}", f"GET /experiments/{first} title")
    check(exp.tags == "compat", f"tags as a |-separated string (got {exp.tags!r})")
    check(len(exp.created_at) == 19, f"created_at is YYYY-MM-DD HH:MM:SS (got {exp.created_at!r})")
    patched = experiments.patch_experiment(id=first, body={"title": f"Python client check {marker}, renamed"})
    check(patched.title == f"Python client check {marker}, renamed", "PATCH answers the full object")
    check(patched.body == "made by elabapi_python", "PATCH keeps the body")

    # A second experiment, then the list with q, limit and order.
    _, _, headers = experiments.post_experiment_with_http_info(body={"title": "Second for links"})
    second = new_id(headers)
    found = experiments.read_experiments(q=marker, limit=5, order="date", sort="desc")
    check([e.id for e in found] == [first], f"list with q finds the renamed one (got {[e.id for e in found]})")
    everything = experiments.read_experiments(limit=1000, order="id", sort="desc")
    ids = [e.id for e in everything]
    check(ids == sorted(ids, reverse=True) and second in ids, "order=id sort=desc")
    limited = experiments.read_experiments(limit=1, order="id", sort="asc")
    check(len(limited) == 1 and limited[0].id == min(ids), "limit=1 with order=id sort=asc")

    # Comment and step.
    _, status, headers = comments.post_entity_comments_with_http_info(
        "experiments", first, body={"comment": "from Python"}
    )
    check(status == 201, "POST comments answers 201")
    comment_id = new_id(headers)
    listed = comments.read_entity_comments("experiments", first)
    check([c.id for c in listed] == [comment_id], "the comment is listed under the id from Location")
    check(listed[0].comment == "from Python", "comment text")
    _, status, headers = steps.post_step_with_http_info("experiments", first, body={"body": "Python step"})
    check(status == 201, "POST steps answers 201")
    step_id = new_id(headers)
    listed = steps.read_steps("experiments", first)
    check([s.id for s in listed] == [step_id], "the step is listed under the id from Location")
    steps.patch_step("experiments", first, step_id, body={"action": "finish"})
    listed = steps.read_steps("experiments", first)
    check(listed[0].finished in (1, True), "finish ticks the step")

    # Link two experiments.
    _, status, _ = links.post_entity_experiments_links_with_http_info("experiments", first, second)
    check(status == 201, "POST experiments_links answers 201")
    linked = links.read_entity_experiments_links("experiments", first)
    check([link.entityid for link in linked] == [second], "the link is listed")

    # Users and teams.
    me = users.read_user("me")
    check(me.userid is not None and me.email, "users/me has userid and email")
    team_list = teams.read_teams()
    check(len(team_list) >= 1 and team_list[0].name, "teams are listed with names")
    team = teams.read_team("current")
    check(team.id in [t.id for t in team_list], "teams/current is one of the caller's teams")

    # Templates and extra fields (metadata as eLabFTW's JSON string).
    templates = elabapi_python.ExperimentsTemplatesApi(client)
    metadata = {
        "elabftw": {"extra_fields_groups": [{"id": 1, "name": "Conditions"}]},
        "extra_fields": {
            "Temperature": {"type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"], "group_id": 1},
            "Sample type": {"type": "select", "value": "soil", "options": ["soil", "water"]},
        },
    }
    _, status, headers = templates.post_experiment_template_with_http_info(
        body={"title": f"Template {marker}", "body": "from a template", "metadata": json.dumps(metadata)}
    )
    check(status == 201, "POST /experiments_templates answers 201")
    template_id = new_id(headers)
    check(templates.get_experiment_template(template_id).title == f"Template {marker}", "GET the template")
    check(template_id in [t.id for t in templates.read_experiments_templates()], "the template is listed")
    templates.patch_experiment_template(template_id, body={"title": f"Template {marker} v2"})
    _, status, headers = experiments.post_experiment_with_http_info(body={"template": template_id})
    check(status == 201, "POST /experiments with a template answers 201")
    made = new_id(headers)
    raw = json.loads(experiments.get_experiment(made, _preload_content=False).data)
    check(raw["created_from_id"] == template_id, "the experiment records its template")
    check(raw["title"] == f"Template {marker} v2" and raw["body"] == "from a template", "copied content")
    check(json.loads(raw["metadata"]) == metadata, "metadata round-trips as eLabFTW's JSON string")
    experiments.patch_experiment(
        id=made, body={"action": "updatemetadatafield", "Temperature": "37.5"}, _preload_content=False
    )
    found = json.loads(
        experiments.read_experiments_with_http_info(q="field:Temperature>30", limit=50, _preload_content=False)[0].data
    )
    check([e["id"] for e in found] == [made], "updatemetadatafield, then q=field:Temperature>30 finds it")
    templates.delete_experiment_template(template_id)

    # Resources: a category (example 11), an item in it (example 05), linked from an
    # experiment (example 21), and the list by category (example 19).
    categories = elabapi_python.ResourceCategoriesApi(client)
    items = elabapi_python.ItemsApi(client)
    item_links = elabapi_python.LinksToItemsApi(client)
    _, status, headers = categories.post_team_one_rescat_with_http_info(
        team.id, body={"title": f"Antibodies {marker}", "color": "#29aeb9"}
    )
    check(status == 201, "POST resources_categories answers 201")
    category = new_id(headers)
    categories.patch_rescat(team.id, category, body={"title": f"Antibodies {marker} v2"}, _preload_content=False)
    listed = json.loads(categories.read_team_resources_categories(team.id, _preload_content=False).data)
    check(f"Antibodies {marker} v2" in [c["title"] for c in listed], "the renamed category is listed")
    _, status, headers = items.post_item_with_http_info(body={"category": category, "tags": ["compat"]})
    check(status == 201, "POST /items answers 201")
    item = new_id(headers)
    patched = items.patch_item(body={"title": f"Anti-GFP {marker}", "body": "rabbit", "rating": 4}, id=item)
    check(patched.title == f"Anti-GFP {marker}", "PATCH /items answers the full object")
    raw = json.loads(items.get_item(item, _preload_content=False).data)
    check(raw["category"] == category and raw["category_title"] == f"Antibodies {marker} v2", "item category")
    in_category = json.loads(items.read_items(category=str(category), limit=100, _preload_content=False).data)
    check([i["id"] for i in in_category] == [item], "GET /items?cat= lists the category's items")
    _, status, _ = item_links.post_entity_items_links_with_http_info("experiments", first, item)
    check(status == 201, "POST experiments/{id}/items_links/{item} answers 201")
    linked = json.loads(item_links.read_entity_items_links("experiments", first, _preload_content=False).data)
    check([link["entityid"] for link in linked] == [item], "the item link is listed")
    raw = json.loads(items.get_item(item, _preload_content=False).data)
    check(first in [link["entityid"] for link in raw["related_experiments_links"]], "the item knows who links to it")

    # Team tags (example 22: create a team's tags from a list), renamed by the admin across
    # the team's entries.
    team_tags = elabapi_python.TeamTagsApi(client)
    _, status, headers = team_tags.post_team_tag_with_http_info(team.id, body={"tag": f"lake {marker}"})
    check(status == 201, "POST /teams/{id}/tags answers 201")
    declared = new_id(headers)
    listed = team_tags.read_team_tags(team.id)
    check(f"lake {marker}" in [t.tag for t in listed], "the declared tag is listed")
    compat = [t for t in listed if t.tag == "compat"]
    check(len(compat) == 1 and compat[0].item_count >= 2, "team tags count the entries that carry them")
    renamed = team_tags.patch_team_tag(team.id, compat[0].id, body={"action": "updatetag", "tag": f"compat {marker}"})
    check(renamed.tag == f"compat {marker}", "PATCH updatetag answers the renamed tag")
    raw = json.loads(experiments.get_experiment(first, _preload_content=False).data)
    check(raw["tags"] == f"compat {marker}", "the rename reached the experiment")
    team_tags.delete_team_tag(team.id, declared)
    check(f"lake {marker}" not in [t.tag for t in team_tags.read_team_tags(team.id)], "DELETE removes the tag")

    # metadatamerge changes one value and keeps the rest.
    merged = experiments.patch_experiment(
        body={"metadatamerge": {"extra_fields": {"Temperature": {"value": "12"}}}}, id=made, _preload_content=False
    )
    extra = json.loads(json.loads(merged.data)["metadata"])["extra_fields"]
    check(extra["Temperature"]["value"] == "12" and extra["Temperature"]["type"] == "number", "metadatamerge")

    print("elabapi_python compatibility: all checks passed")


if __name__ == "__main__":
    main()
