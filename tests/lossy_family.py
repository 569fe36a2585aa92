"""abraxas under the name 'lossy', whose ranks never tell each other their
spikes: a split family that breaks exactness, for hera.testing.check_ranks
to catch (it must be importable by name: check_ranks runs real processes)."""

from __future__ import annotations

import hera_family_abraxas as abraxas
from hera.family import FamilyInfo, LoadedAgent, hookimpl


@hookimpl
def hera_family():
    return FamilyInfo(name="lossy", version="1.0", data_format=abraxas.DATA_FORMAT)


hera_layouts, hera_build, hera_load = abraxas.hera_layouts, abraxas.hera_build, abraxas.hera_load
hera_step, hera_serialize = abraxas.hera_step, abraxas.hera_serialize
hera_encode_input, hera_decode_output = abraxas.hera_encode_input, abraxas.hera_decode_output


@hookimpl
def hera_load_shard(definition, tensors, state, device, seed, shard):
    from hera_family_abraxas.sharded import ShardedSheet

    class Lossy(ShardedSheet):
        def _exchange(self, fired):
            return [told[:0] for told in super()._exchange(fired)]

    sheet = Lossy(definition, tensors, state, device, seed, shard)
    return LoadedAgent(handle=sheet, device=str(sheet.device), backend=sheet.backend)
