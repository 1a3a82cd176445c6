from portico.cli.main import app

app(prog_name="portico")
