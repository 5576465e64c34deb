# The two commands of the README, plus the steps they are made of.
#   make main   install what is missing, build, train and evaluate the AHI model on the shipped data
#   make test   install what is missing, build, run the whole test suite
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps configure build test main bench clean
deps:
	bash .ci/install-deps
configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
build: configure
	cmake --build $(BUILD) -j $(JOBS)
test: build
	cd $(BUILD) && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j $(JOBS)
main: configure
	cmake --build $(BUILD) --target sleepnet_app -j $(JOBS)
	$(BUILD)/apps/sleepnet main
bench: build
	bash bench/run_all.sh $(BUILD)
clean:
	rm -rf $(BUILD)
