"""The admin's names of things: plurals as English writes them ("store entries", not "store entrys")."""

from __future__ import annotations

import re

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import PASSWORD


def test_admin_names_no_model_with_a_naive_plural():
    # given every model the admin shows
    naive = []
    for model in admin.site._registry:
        meta = model._meta
        # when its plural is Django's default (the singular + "s") for a singular ending in consonant + y
        if re.search(r"[^aeiou]y$", str(meta.verbose_name)) and str(meta.verbose_name_plural).endswith("ys"):
            naive.append(f"{meta.label}: {meta.verbose_name_plural}")
    # then there is none
    assert naive == []


def test_admin_names_index_lists_store_entries(db):
    # given a superuser on the admin's index
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD))
    # when the page is read / then the store's model is "Store entries"
    page = client.get("/admin/").content.decode()
    assert "Store entries" in page and "Store entrys" not in page
