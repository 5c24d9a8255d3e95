"""Serve the `top/compress` and `top-sweep/sweep` deployments from this process (started by flows.services)."""

from prefect import serve

from flows.compress import compress, sweep


def main() -> None:
    serve(compress.to_deployment(name="compress"), sweep.to_deployment(name="sweep"), print_starting_message=True)


if __name__ == "__main__":
    main()
