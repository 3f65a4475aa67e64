"""Build steps pyproject.toml cannot express: compile the Cython core, generate gRPC stubs.

Import names: the folders of the repository map onto one ``cardgate`` namespace
(``fastcore/`` -> ``cardgate.fastcore``, ``gateway/`` -> ``cardgate.gateway``, ...) so
that generic folder names never collide with other installed distributions.
"""
import pathlib

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).parent.resolve()
PROTO_ROOT = ROOT / "proto"
PROTO_PACKAGE_DIR = PROTO_ROOT / "cardgate" / "v1"


def generate_proto_stubs():
    """Run protoc (from grpcio-tools) on proto/cardgate/v1/*.proto, next to the sources."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_PACKAGE_DIR.glob("*.proto"))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    argv = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={PROTO_ROOT}",
        f"--pyi_out={PROTO_ROOT}",
        f"--grpc_python_out={PROTO_ROOT}",
        *protos,
    ]
    if protoc.main(argv) != 0:
        raise SystemExit(f"protoc failed on {protos}")
    (PROTO_PACKAGE_DIR / "__init__.py").write_text(
        '"""Generated protobuf and gRPC stubs of the cardgate.v1 wire contract."""\n'
    )


class BuildPyWithProtos(build_py):
    def run(self):
        generate_proto_stubs()
        super().run()


extensions = cythonize(
    [
        Extension("cardgate.fastcore.records", ["fastcore/records.pyx"], include_dirs=["fastcore"]),
        Extension("cardgate.fastcore.ledger", ["fastcore/ledger.pyx"], include_dirs=["fastcore"]),
        Extension("cardgate.fastcore.reports", ["fastcore/reports.pyx"], include_dirs=["fastcore"]),
    ],
    # Cython resolves cimports by package name; our folder is named fastcore/ but
    # installs as cardgate.fastcore, so the .pxd files are found through this path.
    include_path=["fastcore"],
    compiler_directives={
        "language_level": "3",
        "boundscheck": False,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": False,
    },
)

# The gateway's packages, one folder each (gateway/<name>).
GATEWAY_PACKAGES = ("api", "cli", "fleet", "issuing", "iso8583", "loyalty", "office", "ops",
                    "security", "store")

setup(
    packages=[
        "cardgate.fastcore",
        "cardgate.gateway",
        *(f"cardgate.gateway.{p}" for p in GATEWAY_PACKAGES),
        "cardgate.devices",
        "cardgate.bureau",
        "cardgate.v1",
    ],
    package_dir={
        "cardgate.fastcore": "fastcore",
        "cardgate.gateway": "gateway",
        **{f"cardgate.gateway.{p}": f"gateway/{p}" for p in GATEWAY_PACKAGES},
        "cardgate.devices": "devices",
        "cardgate.bureau": "bureau",
        "cardgate.v1": "proto/cardgate/v1",
    },
    package_data={"cardgate.v1": ["*.proto", "*.pyi"], "cardgate.fastcore": ["*.pxd", "*.pyx"]},
    ext_modules=extensions,
    cmdclass={"build_py": BuildPyWithProtos},
)
