import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import os

    # The embedded backend: no key, no cost. Point MESHAPI_BASE_URL at MeshAPI for real images.
    os.environ.setdefault("MESHAPI_BASE_URL", "local")

    import marimo as mo

    import mesh_magics as mm
    return mm, mo


@app.cell
def _(mo):
    mo.md(
        """
        # mesh-magics in marimo

        marimo has no magics: `mm.cell` takes the text of a `%%meshimage` cell and does
        what the magic would. marimo reruns a cell when a value above it changes, so
        replay is on here: a rerun with the same request answers from the store and
        costs nothing (`--fresh`, or `replay=False`, asks anew).
        """
    )
    return


@app.cell
def _(mm):
    fox = mm.cell(
        """--size 1024x1024
        A red fox in fresh snow, morning light"""
    )
    fox
    return (fox,)


@app.cell
def _(mm):
    owls = mm.generate("An owl on a branch at dusk", size="1024x1024", n=2)
    owls
    return (owls,)


@app.cell
def _(mm):
    animals = mm.sweep(["A fox", "An owl"], seed=[1, 2])
    animals
    return (animals,)


@app.cell
def _(mo):
    animal = mo.ui.dropdown(["heron", "badger", "otter"], value="heron", label="animal")
    animal
    return (animal,)


@app.cell
def _(animal, mm):
    # {animal} comes from namespace=: marimo sees the cell use `animal`, and reruns it.
    mm.cell(
        """--size 512x512
        A {animal} in watercolour""",
        namespace={"animal": animal.value},
    )
    return


@app.cell
def _(mm):
    form = mm.form("A lighthouse in a storm", size="512x512")
    form
    return (form,)


@app.cell
def _(form, mm, mo):
    # The form's value is the cell it stands for; this cell runs it on each submit.
    mm.cell(form.value) if form.value else mo.md("*Submit the form to generate.*")
    return


if __name__ == "__main__":
    app.run()
