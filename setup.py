"""Packaging for condor-annexd: the annex daemon, its CLI, the lease function and the local AWS kit."""
from setuptools import setup

setup(
    name="condor-annexd",
    version="0.1.0",
    description="HTCondor annex daemon: leased AWS EC2 capacity for an HTCondor pool",
    python_requires=">=3.11",
    packages=["annexd", "condor_annex", "annexd_lambda", "annexd_cfn", "annex_ec2", "localaws"],
    # lambda/ is a directory name Python cannot import (keyword); it ships as annexd_lambda,
    # and the CloudFormation templates in cfn/ as annexd_cfn.
    package_dir={"annexd_lambda": "lambda", "annexd_cfn": "cfn"},
    # annex_ec2/image/: the instance image's systemd units and HTCondor config, which
    # condor_annex_ec2 -install writes out (image/ links to them).
    package_data={"annexd_cfn": ["*.yaml"], "annexd": ["prices.json"], "annex_ec2": ["image/*"]},
    install_requires=[
        "htcondor>=24.0",
        "boto3>=1.34",
        "botocore>=1.34",
        "python-daemon>=3.0",
        "jsonschema>=4.0",
        # The CLI checks the daemon's replies with validators compiled from the same schemas
        # (jsonschema's import alone was half of a command's start-up).
        "fastjsonschema>=2.16",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.2",
            "pytest-xdist>=3.5",
            "moto[server]>=5.1,<6",
            "cfn-lint>=1.0,<2",
            "hypothesis>=6.0",
            # An independent check of the IDTOKENs the daemon mints (HS256 + HKDF).
            "PyJWT>=2.8",
            "cryptography>=41",
        ],
    },
    entry_points={
        "console_scripts": [
            "condor_annex = condor_annex.cli:main",
            "condor_annexd = annexd.main:main",
            "condor_annex_role_template = condor_annex.roletemplate:main",
            "condor_annex_ec2 = annex_ec2.bootstrap:main",
        ],
    },
)
