from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("workers", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="storeentry",
            options={"ordering": ["key"], "verbose_name_plural": "store entries"},
        ),
    ]
