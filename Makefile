# cwl-airflow appliance. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
RESULTS := build/test-results
export PYTHONPATH := $(CURDIR)/src
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg
export PACKER_CACHE_DIR := $(CURDIR)/build/packer_cache
TESTHOSTS := $(PYTHON) -m testhosts
# a fact of ansible/group_vars/all/appliance.yml (PYTHONPATH again: the $(shell) of make 4.3 has no exports)
FACT := PYTHONPATH=$(CURDIR)/src $(PYTHON) scripts/fact.py
# the cwl_airflow package's unit tests need Airflow and cwltool: their own venv (make tools)
CWL_UNIT := $(VENV)-cwl/bin/python -m pytest tests/cwl_unit --confcutdir=tests/cwl_unit -p no:cacheprovider

.PHONY: help tools deps box-deps wheel test test-full unit lint host host-down bench bench-portable bench-box lock base-image box box-test conformance portable-python portable appimage

# The box (packer/): BOX_OS names a packer/*.pkrvars.hcl; BOX_ACCEL=tcg where KVM does not work.
BOX_OS ?= debian-12
BOX_ACCEL ?= kvm
BOX_DIR ?= build/box
BOX_CA_DIR ?= /usr/local/share/ca-certificates
CACHE ?= $(or $(TESTHOSTS_CACHE),/var/cache/cwl-airflow-appliance)
BASE_IMAGE := build/base/debian-12.qcow2
VAGRANT_KEY ?= $(firstword $(wildcard /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant \
  /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant))
PACKER_VARS = -var-file=packer/$(BOX_OS).pkrvars.hcl -var accelerator=$(BOX_ACCEL) -var output_dir=$(BOX_DIR) \
  -var ansible_command=$(VENV)/bin/ansible-playbook -var ssh_private_key_file=$(BOX_DIR)/vagrant.key \
  -var 'extra_ca_certs=$(shell python3 -c 'import glob, json, sys; print(json.dumps(sorted(glob.glob(sys.argv[1] + "/*.crt"))))' $(BOX_CA_DIR))'

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Each target installs what it needs (idempotent; root only while a package is missing).
tools: ## the Python tools' venvs only (unit tests, lint, the wheel)
	@scripts/install-deps.sh $(VENV)

deps: ## the venvs and the packages of the test hosts and the portable build (nspawn, debootstrap, Packer)
	@scripts/install-deps.sh $(VENV) hosts

box-deps: ## deps and the box's: qemu, the base image's partitioning, Vagrant
	@scripts/install-deps.sh $(VENV) hosts box

wheel: tools ## build the cwl-airflow wheel into build/dist (the cwl_airflow role installs it); same sources, same bytes
	rm -rf build/dist && SOURCE_DATE_EPOCH=315532800 $(VENV)/bin/pip wheel --quiet --no-deps --wheel-dir build/dist .

# The official CWL v1.2 conformance suite (not part of this repository): its folder
CWL_SUITE ?= ../shared/cwl-v1.2
export CWL_SUITE

# CI's tier leaves out the tests marked `full` (tests/conftest.py), to stay within its time budget
TEST_TIER := -m "not full"
test: deps wheel ## what CI runs: unit tests, roles and artifacts on real test hosts, lint; JUnit XML in build/test-results
	@mkdir -p $(RESULTS)
	$(CWL_UNIT) --junitxml=$(RESULTS)/junit-cwl-unit.xml
	$(PYTHON) -m pytest --junitxml=$(RESULTS)/junit.xml $(TEST_TIER) $(PYTEST_ARGS)

test-full: TEST_TIER :=
test-full: box-deps $(BASE_IMAGE) test ## make test and the `full` tier: the artifacts on every Debian release, the box's base image and smoke build

conformance: deps wheel ## the CWL suite (CWL_SUITE) through cwl-airflow and plain cwltool on one host; figures into docs/benchmarks.md (CWL_TAGS=required for a part)
	$(PYTHON) scripts/conformance.py --suite $(CWL_SUITE) $(if $(CWL_TAGS),--tags $(CWL_TAGS)) docs/benchmarks.md

unit: tools ## the fast tests only (no test host)
	$(CWL_UNIT)
	$(PYTHON) -m pytest tests/unit

lint: tools ## ansible-lint, production profile
	cd ansible && ../$(VENV)/bin/ansible-lint --offline --profile production

host: deps wheel ## boot a local test host and provision it with ansible/site.yml
	$(TESTHOSTS) -t dev up appliance --play ansible/site.yml

host-down: deps ## remove the host of `make host`
	$(TESTHOSTS) -t dev down

bench: deps wheel ## measure provisioning, Airflow and cwl-airflow figures into docs/benchmarks.md (BENCH_ARGS=--airflow-only|--cwl-only)
	$(PYTHON) scripts/bench.py $(BENCH_ARGS) docs/benchmarks.md

portable-python: deps ## the portable bundle's CPython, built in Debian 11 (minutes once; then from the cache by the hash of its inputs)
	$(PYTHON) scripts/portable-python.py

portable: deps wheel ## the portable tarball into build/portable and the AppImage into build/appimage (Packer on a Debian 11 build host; PORTABLE_ARGS=--keep-host)
	$(PYTHON) scripts/portable.py $(PORTABLE_ARGS)

appimage: portable ## the AppImage, build/appimage/cwl-airflow-VERSION-x86_64.AppImage (made with the tarball, from the same tree)

base-image: box-deps $(BASE_IMAGE) ## build the Debian 12 base image of the box (debootstrap; no download of a cloud image)

$(BASE_IMAGE): packer/base-image.sh scripts/debian-root.sh ansible/group_vars/all/appliance.yml | box-deps
	@mkdir -p $(@D)
	BASE_DEB_CACHE=$(CACHE)/base-image-debs packer/base-image.sh $@ \
	  $(foreach key,suite mirror security_mirror,$(shell $(FACT) appliance_debian.$(key)))

box: box-deps wheel $(if $(filter debian-12,$(BOX_OS)),$(BASE_IMAGE)) ## build the Vagrant boxes (libvirt, VirtualBox) with Packer into build/box (BOX_OS, BOX_ACCEL)
	@mkdir -p $(BOX_DIR)
	install -m 0600 $(VAGRANT_KEY) $(BOX_DIR)/vagrant.key  # ssh wants it private
	set -o pipefail; packer build -force -timestamp-ui -color=false $(PACKER_VARS) packer/box.pkr.hcl 2>&1 | tee $(BOX_DIR)/build-$(BOX_OS).log
	$(PYTHON) packer/virtualbox-box.py $(BOX_DIR)/$(BOX_OS)/cwl-airflow-$(BOX_OS)-$(file <packer/VERSION).qcow2 \
	  $(BOX_DIR)/cwl-airflow-$(BOX_OS)-$(file <packer/VERSION)-virtualbox.box \
	  --os-type $(if $(filter ubuntu%,$(BOX_OS)),Ubuntu_64,Debian_64)

box-test: box-deps ## boot the built box's disk with qemu and test it: the appliance, the box, a workflow
	$(PYTHON) -m pytest tests/box --box-disk $(BOX_DIR)/$(BOX_OS)/cwl-airflow-$(BOX_OS)-$(file <packer/VERSION).qcow2 \
	  --box-accel $(BOX_ACCEL) --junitxml=$(RESULTS)/junit-box.xml

bench-portable: deps wheel ## build the tarball and the AppImage, then their figures (sizes, unpack, up, memory, workflows) into docs/benchmarks.md
	$(PYTHON) scripts/bench.py --portable docs/benchmarks.md

bench-box: box box-test ## build and test the box, then write its figures (build phases, sizes, first boot) into docs/benchmarks.md
	$(PYTHON) scripts/bench.py --box docs/benchmarks.md

lock: ## re-pin requirements/dev.txt from requirements/dev.in
	rm -rf build/lock-venv && python3 -m venv build/lock-venv
	build/lock-venv/bin/pip install -q -r requirements/dev.in
	{ echo "# Generated by 'make lock' from requirements/dev.in; do not edit."; \
	  env -u PYTHONPATH build/lock-venv/bin/pip freeze --all | grep -vE '^(pip|setuptools|wheel)=='; } > requirements/dev.txt
