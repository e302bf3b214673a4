import json, io
import pytest
from django.test import Client
from labeling.models import ApiToken, Item
from tests.conftest import client_for

BIG = "x" * (10 * 1024 * 1024)

def test_probe(project, alice, bob):
    _, key = ApiToken.issue(alice, "t")
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    base = f"/api/v1/projects/{project.pk}"
    r = api.post(f"{base}/items/", json.dumps([{"text": "fine one"}, {"text": BIG}]), "application/json")
    print("json list", r.status_code, r.content[:300])
    r = api.post(f"{base}/items/", ("{\"text\": \"ok line\"}\n" + json.dumps({"text": BIG}) + "\n").encode(), "application/x-ndjson")
    print("jsonl", r.status_code, r.content[:300])
    r = api.post(f"{base}/annotations/", json.dumps({"item": project.items.first().pk, "labels": [BIG]}), "application/json")
    print("annotation", r.status_code, r.content[:300])
    f = io.BytesIO(b"text,label\nfine,positive\n" + BIG.encode() + b",neutral\n"); f.name = "big.csv"
    r = client_for(alice).post(f"/projects/{project.pk}/import/", {"file": f})
    print("upload", r.status_code, [l for l in r.content.decode().splitlines() if "imported" in l or "line" in l][:5])
    r = Client().post("/accounts/login/", {"username": "bob", "password": BIG})
    print("login", r.status_code, r.content[:200])
    print(Item.objects.filter(project=project).count())
