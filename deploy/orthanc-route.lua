-- Auto-routing for Orthanc 1.10 (deploy/orthanc.json loads it): every CR or DX image that
-- Orthanc receives is sent to the triage node, the modality "triage" of DicomModalities.
-- The node's own results (a Comprehensive SR and a Secondary Capture) and every other
-- class (CT, MR, ...) stay where they are, so nothing loops back to the node.
--
-- SendToModality here queues a job (Orthanc's Jobs list, /jobs). When the node answers
-- Out of Resources (0xA700: model still loading, every slot busy), that job fails; resend
-- it with POST /jobs/<id>/resubmit, or the study with POST /modalities/triage/store.

local TRIAGE = 'triage'

local SCORED_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.1'] = true,      -- Computed Radiography Image Storage
  ['1.2.840.10008.5.1.4.1.1.1.1'] = true,    -- Digital X-Ray Image Storage, For Presentation
  ['1.2.840.10008.5.1.4.1.1.1.1.1'] = true,  -- Digital X-Ray Image Storage, For Processing
}

function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin['RequestOrigin'] == 'Lua' then
    return  -- stored by a script, not received
  end
  if SCORED_CLASSES[tags['SOPClassUID']] then
    SendToModality(instanceId, TRIAGE)
  end
end
