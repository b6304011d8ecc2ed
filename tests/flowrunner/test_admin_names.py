"""The admin's names of things: plurals as English writes them ("store entries", not "store entrys")."""

from __future__ import annotations

import re

from django.contrib import admin


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


def test_admin_names_index_lists_store_entries(admin_client):
    # given a superuser on the admin's index
    # when the page is read / then the store's model is "Store entries"
    page = admin_client.get("/admin/").content.decode()
    assert "Store entries" in page and "Store entrys" not in page
